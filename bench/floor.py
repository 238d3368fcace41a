"""The read-only floor for ``convert``: the I/O it cannot avoid, and nothing else.

For each annotation file in ANNOS_DIR (sorted by name), read the whole file, then read the
first 64 KiB of its image (STEM.jpg, else STEM.png) from IMAGES_DIR. No parsing, no output
but one line of totals. Run as its own process, like the CLI it is compared with.

    python bench/floor.py ANNOS_DIR IMAGES_DIR
"""

import os
import sys

IMAGE_HEAD = 64 * 1024


def main(annos: str, images: str) -> int:
    files = annotation_bytes = image_bytes = missing = 0
    for name in sorted(os.listdir(annos)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(annos, name), "rb") as handle:
            annotation_bytes += len(handle.read())
        files += 1
        stem = name[:-5]
        for ext in (".jpg", ".png"):
            try:
                handle = open(os.path.join(images, stem + ext), "rb")
            except FileNotFoundError:
                continue
            with handle:
                image_bytes += len(handle.read(IMAGE_HEAD))
            break
        else:
            missing += 1
    print(f"{files} annotation files ({annotation_bytes} bytes), {image_bytes} image bytes, {missing} images missing")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    sys.exit(main(sys.argv[1], sys.argv[2]))
