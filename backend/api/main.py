"""All routes under /api/v1."""

from fastapi import APIRouter

from backend.api.routes import datasets, ladders, meta, studies, sweeps

api_router = APIRouter()
api_router.include_router(studies.router)
api_router.include_router(sweeps.router)
api_router.include_router(ladders.router)
api_router.include_router(datasets.router)
api_router.include_router(meta.router)
