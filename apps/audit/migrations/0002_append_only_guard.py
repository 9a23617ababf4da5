"""A PostgreSQL trigger makes the audit log append-only below the ORM too.

AuditEntry.save()/delete() already refuse, but QuerySet.update()/delete() and raw SQL bypass
them. The trigger refuses DELETE and any UPDATE that changes what an entry says. Two columns
may change: actor_id (ON DELETE SET NULL when a user account is removed; actor_label keeps
the name) and at (tests backdate entries to build histories). TRUNCATE stays possible: it
needs table ownership, and the test suite's flush uses it.
"""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION audit_auditentry_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit entries cannot be deleted' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.actor_label, NEW.action, NEW.object_type, NEW.object_id, NEW.object_repr, NEW.reason,
        NEW.before::text, NEW.after::text)
       IS DISTINCT FROM
       (OLD.id, OLD.actor_label, OLD.action, OLD.object_type, OLD.object_id, OLD.object_repr, OLD.reason,
        OLD.before::text, OLD.after::text) THEN
        RAISE EXCEPTION 'audit entries cannot be changed' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS audit_auditentry_append_only ON audit_auditentry;
CREATE TRIGGER audit_auditentry_append_only
    BEFORE UPDATE OR DELETE ON audit_auditentry
    FOR EACH ROW EXECUTE FUNCTION audit_auditentry_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_auditentry_append_only ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_auditentry_append_only();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
