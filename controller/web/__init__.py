"""The operator screen: a web page for the line, with logins and roles (docs/operators.md).

Starlette, served by uvicorn inside the controller's own event loop; pages are
rendered on the server and kept live by server-sent events fed from the line
event stream (decision 0014). Security: docs/security.md.
"""
