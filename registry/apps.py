from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "LEMTRADA REMS registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from registry import rules
        from registry.services.pregnancy import pregnancy_digest_source_register

        rules.current()  # a malformed REMS_* setting stops start-up instead of failing every gate
        # PRG-4, MON-5: pregnancy reminders ride in the daily sweep's prescriber digests; the pregnancy
        # module registers itself, so monitoring does not import it.
        pregnancy_digest_source_register()
