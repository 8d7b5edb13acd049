"""django.contrib.admin with the registry's own default site, Django's documented way to replace
`admin.site` (kept apart from registry/apps.py: one module, one default app config)."""

from django.contrib.admin.apps import AdminConfig


class RegistryAdminConfig(AdminConfig):
    """The admin, whose `admin.site` is registry/admin_site.py's site (second factor for administrators)."""

    default_site = "registry.admin_site.RegistryAdminSite"
