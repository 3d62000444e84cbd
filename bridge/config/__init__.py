"""Configuration: rules.yaml read, checked and turned into a `Config` (load), its YAML reader,
secret references and the published JSON schema. Imports come from the modules themselves."""
