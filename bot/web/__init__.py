"""`solace web`: a server-rendered console over Solace's own SQLite database.

Moderators work the review queue of flagged conversations; raters run the ExTES paper's human
evaluation; admins create studies and read results. Starlette + Jinja2, no client-side build.
"""
