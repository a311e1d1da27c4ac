"""I3S (OGC Indexed 3D Scene Layer) encoders: scene layer resources and the SLPK package.

- :mod:`cim.formats.i3s.resources`: the JSON documents and binary buffers of a mesh scene layer
  (3DObject / IntegratedMesh, I3S 1.8 with node pages): geometry buffers, attribute buffers,
  node pages, statistics and the layer document.
- :mod:`cim.formats.i3s.slpk`: the scene layer package, a ZIP of STORED entries with the
  ``@specialIndexFileHASH128@`` index last.

Pure encoders: they turn arrays and dicts into bytes. Reading a built layer and writing the
package to disk is :mod:`cim.export.i3s`.
"""

from __future__ import annotations
