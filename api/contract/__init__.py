"""The job contract shared by the HTTP tier and the workers, versioned: ``v1``."""
