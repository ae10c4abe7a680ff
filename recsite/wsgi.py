"""WSGI entry point (gunicorn recsite.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")

application = get_wsgi_application()

# Import every view (and with them numpy, scipy and scikit-learn) now rather than on the first
# request: with gunicorn --preload this happens once in the master before it forks, so a new
# worker answers at once instead of spending seconds importing (and, on a busy machine, being
# killed by gunicorn's timeout before its first response).
_views = get_resolver().url_patterns
