"""Files and joint layouts: BVH reading and writing, named input layouts."""
