"""Security plumbing: the content security policy, the client IP for the audit log,
and login throttling. docs/security.md explains each choice."""

from __future__ import annotations

import hashlib
from contextvars import ContextVar

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from rest_framework import throttling

_ip: ContextVar[str | None] = ContextVar("recsite_client_ip", default=None)


def client_ip(request) -> str | None:
    """REMOTE_ADDR, or the first X-Forwarded-For hop when we sit behind a trusted proxy."""
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip() or None
    return request.META.get("REMOTE_ADDR") or None


def current_ip() -> str | None:
    """The client IP of the request being served in this thread (None in workers, commands)."""
    return _ip.get()


def content_security_policy() -> str:
    return "; ".join(f"{name} {value}" for name, value in settings.CONTENT_SECURITY_POLICY.items())


class SecurityHeadersMiddleware:
    """Sends the CSP on every response and remembers the client IP for audit entries."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _ip.set(client_ip(request))
        try:
            response = self.get_response(request)
        finally:
            _ip.reset(token)
        if settings.CONTENT_SECURITY_POLICY and "Content-Security-Policy" not in response:
            header = "Content-Security-Policy"
            if settings.CONTENT_SECURITY_POLICY_REPORT_ONLY:
                header += "-Report-Only"
            response[header] = content_security_policy()
        return response


# --- Login throttling ------------------------------------------------------------------------


def _login_key(username: str, ip: str | None) -> str:
    digest = hashlib.sha256(f"{username.strip().lower()}|{ip or ''}".encode()).hexdigest()
    return f"login-failures:{digest}"


def login_blocked(*, username: str, ip: str | None) -> bool:
    return cache.get(_login_key(username, ip), 0) >= settings.LOGIN_FAILURE_LIMIT


def login_failed(*, username: str, ip: str | None) -> None:
    key = _login_key(username, ip)
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    # add() starts the window at the first failure; later failures do not extend it.
    if not cache.add(key, 1, window):
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.add(key, 1, window)


def login_succeeded(*, username: str, ip: str | None) -> None:
    cache.delete(_login_key(username, ip))


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login form, refusing a user name + IP after too many failures (cache-backed)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-in attempts. Try again in %(minutes)d minutes.",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request is not None else None
        if username and login_blocked(username=username, ip=ip):
            raise forms.ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)},
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            if username:
                login_failed(username=username, ip=ip)
            raise
        login_succeeded(username=username, ip=ip)
        return cleaned


# --- API throttling ----------------------------------------------------------------------------


class AnonRateThrottle(throttling.AnonRateThrottle):
    """Limits unauthenticated API clients by IP. A request carrying a valid write key is not
    anonymous: tracking servers send many batches from one IP, so they are exempt."""

    def get_cache_key(self, request, view):
        if request.auth is not None:
            return None
        return super().get_cache_key(request, view)
