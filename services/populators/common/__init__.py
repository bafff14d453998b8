"""What every populator needs: arguments, the volume writer and the metrics endpoint."""
