"""The admin app with the registry's site (imported by INSTALLED_APPS before models load: no model imports)."""

from django.contrib.admin.apps import AdminConfig


class RegistryAdminConfig(AdminConfig):
    """Replaces `django.contrib.admin` in INSTALLED_APPS so `admin.site` is the registry's site."""

    default_site = "registry.console.site.RegistryAdminSite"
