# One image for every process: web (bin/web), worker (bin/worker), beat (bin/beat).
# Run bin/release (migrate + collectstatic) before the web server; docker-compose.yml does.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBUG=0 \
    HOST=0.0.0.0 \
    PORT=8000 \
    OUTSIDE_IN_VAR_DIR=/var/lib/outside-in

WORKDIR /app

# WeasyPrint (the session summary's PDF) loads Pango and HarfBuzz's subsetter at run time
# (Debian's list in WeasyPrint's "First steps") and lays the PDF out in DejaVu.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# The pins live in pyproject.toml; install them first so code changes reuse this layer.
# EXTRAS: the optional extras to install too. "spark" (the default) is the Spark Connect client,
# so that a plan can read its events on a customer's Spark cluster; it needs no Java (only a
# Spark server does). `--build-arg EXTRAS=` leaves it out (about 450 MB smaller).
ARG EXTRAS=spark
COPY pyproject.toml ./
RUN python -c 'import sys, tomllib; project = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = [e for e in sys.argv[1].split(",") if e]; reqs = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]; print("\n".join(reqs))' "$EXTRAS" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .

RUN useradd --create-home --uid 1000 outside-in \
    && mkdir -p /var/lib/outside-in/media \
    && chown -R outside-in:outside-in /var/lib/outside-in
USER outside-in

EXPOSE 8000
CMD ["bin/web"]
