"""The Kubernetes stack: into an existing cluster, one ComponentResource per component."""
