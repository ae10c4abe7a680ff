from django.core.management.base import BaseCommand

from recsite import services


class Command(BaseCommand):
    help = "Create the role groups and the demo accounts (admin, editor, marketer, analyst)."

    def handle(self, *args, **options):
        password, generated = services.demo_password()
        names = services.demo_accounts_ensure(password=password)
        self.stdout.write(f"Demo accounts: {', '.join(names)}")
        if generated:
            self.stdout.write(
                self.style.WARNING(f"Generated demo password (kept in var/demo_password): {password}")
            )
        else:
            self.stdout.write(f"Demo password: {password}")
