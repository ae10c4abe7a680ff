from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from recsite import tokens
from recsite.models import ApiToken


class Command(BaseCommand):
    help = (
        "API tokens: `create USER [--name NAME]` prints a new key (shown once; only its hash is "
        "stored), `list [USER]`, `revoke PREFIX`."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a token and print its key.")
        create.add_argument("username")
        create.add_argument("--name", default="manage.py", help="What will use the token.")
        listing = sub.add_parser("list", help="List tokens (prefix, user, name, last use, status).")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="Revoke the active token with this prefix.")
        revoke.add_argument("prefix")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_create(self, *, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        _, key = tokens.token_create(user=user, name=name)
        # The key alone on stdout, so scripts can capture it: TOKEN=$(manage.py api_token create u)
        self.stdout.write(key)

    def handle_list(self, *, username=None, **options):
        rows = ApiToken.objects.select_related("user")
        if username:
            rows = rows.filter(user__username=username)
        for t in rows:
            status = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            self.stdout.write(f"{t.prefix}…\t{t.user}\t{t.name}\tlast used {used}\t{status}")

    def handle_revoke(self, *, prefix, **options):
        prefix = prefix.rstrip("…")
        matches = list(ApiToken.objects.filter(prefix__startswith=prefix, revoked_at__isnull=True)[:2])
        if not matches:
            raise CommandError(f"No active token starts with {prefix!r}.")
        if len(matches) > 1:
            raise CommandError(f"{prefix!r} matches more than one token; give the whole prefix.")
        tokens.token_revoke(token=matches[0])
        self.stdout.write(f"Revoked {matches[0].prefix}… of {matches[0].user}.")
