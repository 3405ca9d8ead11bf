"""Transfer grids: study files, cells, worker processes and the stored experiment."""
