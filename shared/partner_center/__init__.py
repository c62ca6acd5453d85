"""Partner Center REST client: tokens (auth.py) and the customers pager (customers.py)."""
