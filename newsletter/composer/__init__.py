"""The composer: issue YAML to responsive email (MJML) and a real plain-text part."""
