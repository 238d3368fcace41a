"""AWS adapters of the domain core: the only part of the package that imports boto3."""
