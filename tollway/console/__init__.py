"""The web console at /console: static pages (plain JavaScript and CSS shipped in the wheel, no
framework, nothing fetched from another host) that use only the admin API, with an admin key or
a person's single sign-on (docs/console.md)."""
