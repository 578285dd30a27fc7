"""LIV operators (linear input-varying systems, as in STAR): token and channel mixers.

`catalog` registers every operator once (torch-free); the implementations live one family per
module and are loaded lazily through `catalog.load_operator`.
"""
