from django.core.management.base import BaseCommand

from apps.accounts.services import roles_ensure


class Command(BaseCommand):
    help = "Create the viewer/operator/admin groups with their permissions (idempotent)."

    def handle(self, *args, **options):
        groups = roles_ensure()
        self.stdout.write(f"roles: {', '.join(groups)}")
