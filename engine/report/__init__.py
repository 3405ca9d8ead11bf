"""The paper's figures and tables from lab objects."""
