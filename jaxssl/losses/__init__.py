"""Pure loss functions of embeddings. No Flax imports here."""
