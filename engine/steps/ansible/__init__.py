"""The Ansible adapter: the ``ansible`` step type (``step``), the kept worker it talks to
(``warm``), the worker's own process (``host``) and what that process sends through Apprise."""
