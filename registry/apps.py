from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "LEMTRADA REMS registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from registry import rules

        rules.current()  # a malformed REMS_* setting stops start-up instead of failing every gate
