"""Who may read what: Entra ID access tokens validated in the app, and the grants of each caller."""
