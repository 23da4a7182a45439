"""Molecules: SMILES / CSV / SDF through RDKit, GROVER featurisation to torch_geometric graphs, scaffold splits."""
