"""The controller's persistence, one module per aggregate, behind ``controller.store.Store``.

- ``base``: the shared engine, clock and transactions (one write path, SQLAlchemy Core);
- ``lots``: a lot and its state changes; ``wafers``: a wafer's transitions, steps,
  curves and intents; ``requests``: holds and dispositions people ask for;
  ``alarms``; ``tool_states`` (SEMI E10); ``audit``; ``locks``: one controller per
  line and per lot; ``web_sessions``: the operator screen's sessions ended by
  logging out;
- ``records``: the frozen dataclasses reads return.

The rest of the controller uses the facade, never these modules directly
(``docs/database.md``).
"""
