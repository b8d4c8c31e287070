"""Grafana dashboards as code (:mod:`infra.grafana.build`) and provisioning for the production
compose (``infra/compose/docker-compose.yml``)."""
