"""Independent RF-10N, FC-1, WP-300, WBM-300 and EP-25 tools, written from ../shared/specs alone
(not from sim/).

The drivers are checked against these so that they do not lean on choices our own
simulator made where the specs are silent. Where a spec leaves a choice open, these
tools take the strictest reasonable one (docs/protocols.md, "Independent tools").
"""
