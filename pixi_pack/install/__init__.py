"""An archive to an environment: plan, extract, link, patch prefixes, record, install wheels, activate."""
