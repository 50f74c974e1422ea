"""Pure math on numpy: rotations, skeletons, forward and inverse kinematics helpers."""
