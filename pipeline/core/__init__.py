"""The ground floor: typed-config machinery, NumPy/CuPy backend, weights, neuron models, event counts, Numba blocks, I/O."""
