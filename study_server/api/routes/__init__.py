"""One APIRouter per file: HTML pages, the labeling JSON API, admin, health."""
