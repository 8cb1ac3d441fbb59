# The study server's image: the core install only (FastAPI, SQLAlchemy, Alembic, psycopg), no
# PyTorch and no training code: the parts below import only each other (docs/architecture.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY contract ./contract
COPY study_server ./study_server
COPY markets ./markets
COPY analysis ./analysis
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 10001 --home /app study && chown -R study /app

USER study
EXPOSE 8000
CMD ["study-server", "serve", "--app", "analysis.dashboard.app:create_app", "--host", "0.0.0.0", "--port", "8000"]
