"""Toque's Grafana dashboards as code, and the tools that check and picture them.

``build`` writes ``helm/toque/dashboards/*.json`` from ``ops`` (the ops managers' view) and
``platform_team`` (the platform team's), both made with grafana-foundation-sdk through ``panels``;
``queries`` expands and runs their PromQL the way Grafana does; ``inventory`` lists what Toque
exports; ``render`` draws a dashboard's panels to a PNG. ``make dashboards`` runs ``build``.
"""
