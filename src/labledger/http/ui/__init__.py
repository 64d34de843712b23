"""The web view: instructor pages behind a signed-in cookie session, read-only student links,
and the in-browser receipt verifier. Server-rendered (Jinja2), assets served from here."""
