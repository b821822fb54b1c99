"""The training station: chat rendering and loss masks, packing, the trainer."""
