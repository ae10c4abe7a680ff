"""Project-wide services: roles (groups and their permissions) and demo accounts."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db import transaction
from django.db.models import Model, Q
from django.urls import reverse

DOMAIN_APPS = ("catalog", "personalization", "experiments")

# Which models each role may change (add/change/delete/view). Everyone with a role may
# view what the role's pages show; analysts view everything and export.
ROLE_CHANGES: dict[str, list[tuple[str, str]]] = {
    "Editor": [("catalog", "item"), ("catalog", "tag"), ("catalog", "itemtag")],
    "Marketer": [
        ("personalization", "recommender"),
        ("personalization", "trainingrun"),
        ("personalization", "placement"),
        ("personalization", "segment"),
        ("personalization", "segmentrefresh"),
        ("experiments", "experiment"),
        ("experiments", "variant"),
    ],
}
ROLE_VIEWS: dict[str, list[tuple[str, str | None]]] = {
    "Editor": [("catalog", None)],
    "Marketer": [("catalog", None), ("personalization", None), ("experiments", None)],
    "Analyst": [(app, None) for app in DOMAIN_APPS],
}
ROLES = ("Admin", "Editor", "Marketer", "Analyst")
DEMO_USERS = {"admin": "Admin", "editor": "Editor", "marketer": "Marketer", "analyst": "Analyst"}


def _perms(app: str, model: str | None, actions: tuple[str, ...]) -> Q:
    query = Q(content_type__app_label=app)
    if model:
        query &= Q(content_type__model=model)
    return query & Q(codename__regex=rf"^({'|'.join(actions)})_")


@transaction.atomic
def roles_sync() -> dict[str, int]:
    """Create the role groups and give each exactly its permissions. Idempotent."""
    counts = {}
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        if role == "Admin":
            query = Q(
                content_type__app_label__in=(
                    *DOMAIN_APPS,
                    "auth",
                    "django_celery_beat",
                    "recsite",
                )
            )
        else:
            query = Q(pk__in=[])
            for app, model in ROLE_VIEWS.get(role, []):
                query |= _perms(app, model, ("view",))
            for app, model in ROLE_CHANGES.get(role, []):
                query |= _perms(app, model, ("add", "change", "delete", "view"))
            if role == "Analyst":
                query |= Q(content_type__app_label="personalization", codename="export_data")
        perms = list(Permission.objects.filter(query))
        group.permissions.set(perms)
        counts[role] = len(perms)
    return counts


def demo_password() -> tuple[str, bool]:
    """DEMO_PASSWORD, else one generated on first use and kept in var/ (so it stays the same).

    Returns the password and whether it was generated just now.
    """
    if settings.DEMO_PASSWORD:
        return settings.DEMO_PASSWORD, False
    path = Path(settings.VAR_DIR) / "demo_password"
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(9)
    path.write_text(password)
    path.chmod(0o600)
    return password, True


@transaction.atomic
def demo_accounts_ensure(*, password: str) -> list[str]:
    """Make sure the four demo users exist, in their role, with ``password``. Idempotent."""
    roles_sync()
    user_model = get_user_model()
    names = []
    for username, role in DEMO_USERS.items():
        user, _ = user_model.objects.get_or_create(username=username)
        user.is_staff = role == "Admin"
        user.is_superuser = role == "Admin"
        user.email = f"{username}@example.com"
        if not user.check_password(password):
            user.set_password(password)
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        names.append(username)
    return names


def audit_record(
    *, actor: AbstractBaseUser | None, action: str, target: Model | None = None, detail: dict | None = None
):
    """Append one entry to the audit log (docs/security.md lists the audited actions).

    The client IP comes from the request being served, if any (recsite.security.SecurityHeadersMiddleware).
    """
    from recsite.models import AuditEntry
    from recsite.security import current_ip

    user = actor if actor is not None and actor.is_authenticated else None
    return AuditEntry.objects.create(
        actor=user,
        actor_label=user.get_username() if user is not None else "",
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_label=str(target)[:200] if target is not None else "",
        detail=detail or {},
        ip=current_ip(),
    )


# --- Long-running jobs, across apps ---------------------------------------------------


@dataclass(frozen=True)
class Job:
    kind: str
    label: str
    status: str
    progress: int | None
    message: str
    error: str
    started_at: object
    finished_at: object
    url: str
    retry_url: str = ""


def _refresh_summary(refresh) -> str:
    if refresh.size is None:
        return ""
    return f"{refresh.size} members (+{refresh.entered} / -{refresh.exited})"


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def jobs_recent(*, user, limit: int = 50) -> list[Job]:
    """The latest long jobs the user may see (training, tag-suggestion training, imports,
    segment refreshes and discoveries, experiment analyses, impact refreshes), newest first,
    with progress and errors."""
    from catalog.models import ImportJob, TagSuggestionModel
    from experiments.models import AnalysisSnapshot
    from personalization.models import DiscoveryJob, SegmentRefresh, TrainingRun

    jobs: list[Job] = []
    if user.has_perm("personalization.view_trainingrun"):
        can_retry = user.has_perm("personalization.add_trainingrun")
        for run in TrainingRun.objects.select_related("recommender")[:limit]:
            jobs.append(
                Job(
                    "Training",
                    f"{run.recommender.name} v{run.version}",
                    run.status,
                    run.progress,
                    run.message,
                    _first_line(run.error),
                    run.started_at or run.created_at,
                    run.finished_at,
                    run.get_absolute_url(),
                    reverse("personalization:recommender_train", args=[run.recommender_id])
                    if can_retry and run.status == TrainingRun.Status.FAILED
                    else "",
                )
            )
    if user.has_perm("catalog.view_item"):
        for model in TagSuggestionModel.objects.order_by("-pk")[:limit]:
            jobs.append(
                Job(
                    "Tag suggestions",
                    f"model #{model.pk}",
                    model.status,
                    model.progress,
                    model.message,
                    _first_line(model.error),
                    model.started_at or model.created_at,
                    model.trained_at,
                    reverse("catalog:taxonomy"),
                )
            )
        for job in ImportJob.objects.exclude(status=ImportJob.Status.PREVIEWED)[:limit]:
            jobs.append(
                Job(
                    "Import",
                    job.filename,
                    job.status,
                    job.progress,
                    job.message,
                    _first_line(job.error),
                    job.created_at,
                    job.finished_at,
                    job.get_absolute_url(),
                )
            )
    if user.has_perm("personalization.view_segment"):
        for refresh in SegmentRefresh.objects.select_related("segment")[:limit]:
            jobs.append(
                Job(
                    "Segment refresh",
                    refresh.segment.name,
                    refresh.status,
                    None,
                    _refresh_summary(refresh),
                    _first_line(refresh.error),
                    refresh.started_at,
                    refresh.finished_at,
                    refresh.segment.get_absolute_url(),
                )
            )
    if user.has_perm("personalization.add_segment"):
        for job in DiscoveryJob.objects.order_by("-pk")[:limit]:
            jobs.append(
                Job(
                    "Segment discovery",
                    f"k {job.k or 'auto'} (#{job.pk})",
                    job.status,
                    job.progress,
                    job.message,
                    _first_line(job.error),
                    job.started_at or job.created_at,
                    job.finished_at,
                    job.get_absolute_url(),
                )
            )
    if user.has_perm("experiments.view_experiment"):
        for snapshot in AnalysisSnapshot.objects.select_related("experiment").order_by("-pk")[:limit]:
            jobs.append(
                Job(
                    "Analysis",
                    snapshot.experiment.name,
                    "succeeded",
                    100,
                    f"as of {snapshot.as_of:%Y-%m-%d %H:%M} UTC",
                    "",
                    snapshot.computed_at,
                    None,
                    snapshot.experiment.get_absolute_url(),
                )
            )
    if user.has_perm("personalization.view_recommender"):
        from .models import ImpactRefresh

        for refresh in ImpactRefresh.objects.all()[:limit]:
            jobs.append(
                Job(
                    "Impact refresh",
                    f"{refresh.day_from:%Y-%m-%d} to {refresh.day_to:%Y-%m-%d}",
                    refresh.status,
                    None,
                    f"{refresh.rows} daily figures" if refresh.status == "succeeded" else "",
                    _first_line(refresh.error),
                    refresh.started_at,
                    refresh.finished_at,
                    reverse("impact"),
                )
            )
    jobs.sort(key=lambda job: job.started_at or 0, reverse=True)
    return jobs[:limit]
