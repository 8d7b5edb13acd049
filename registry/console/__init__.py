"""The administrators' console (issue 12; the admin site itself is registry/admin_site.py): its roles,
the patient page, the program dashboard and their chart component. docs/console.md describes how an
administrator works it."""
