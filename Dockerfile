# The study server's image: the core install only (FastAPI, SQLAlchemy, Alembic, psycopg), no PyTorch.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY model ./model
COPY study_server ./study_server
COPY mturk ./mturk
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 10001 --home /app study && chown -R study /app

USER study
EXPOSE 8000
CMD ["study-server", "serve", "--host", "0.0.0.0", "--port", "8000"]
