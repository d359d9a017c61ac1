"""The WSGI application: Django's, with webhook deliveries served ahead of it (channels/intake.py says why)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "socialcrm.settings")
django_application = get_wsgi_application()

from channels.intake import WebhookIntakeApp  # noqa: E402  (the apps load in get_wsgi_application)

application = WebhookIntakeApp(django_application)
