"""The main job (`make demo`): an offline tour of the bridge."""


def main() -> None:
    print("hgf-bridge demo: nothing to show yet")


if __name__ == "__main__":
    main()
