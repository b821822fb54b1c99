"""`sftline ui`: the dashboard over the record (see `sftline.ui.app`)."""
