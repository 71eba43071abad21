"""Views: the ranked CSV, the HTML page and its charts, explain, the column dictionary. They only read."""
