"""The operator catalog and the presets, as the dashboard and API clients read them.

Everything here comes from `core.catalog` and `core.presets`: the dashboard draws layer
diagrams in the colours the catalog gives, so a newly registered operator shows up with
its own colour without touching the dashboard.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas.public import CatalogResponse, GenePublic, OperatorPublic
from core import PRESETS, catalog

router = APIRouter(tags=["catalog"])


@router.get("/catalog", response_model=CatalogResponse)
def operator_catalog() -> CatalogResponse:
    return CatalogResponse(
        operators=[
            OperatorPublic(
                name=spec.name,
                class_id=spec.class_id,
                kind=spec.kind,
                summary=spec.summary,
                featurizer=spec.featurizer,
                colour=spec.colour,
                default_search=spec.default_search,
                genes=[
                    GenePublic(
                        name=g.name,
                        low=g.low,
                        high=g.high,
                        default=g.default,
                        doc=g.doc,
                        search_choices=list(g.search_choices),
                        scales_with_width=g.scales_with_width,
                    )
                    for g in spec.genes
                ],
            )
            for spec in catalog.ordered()
        ],
        presets={name: p.summary for name, p in PRESETS.items()},
    )
