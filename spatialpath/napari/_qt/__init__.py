"""Qt front ends of the spatialpath napari widgets (imported only by napari)."""
