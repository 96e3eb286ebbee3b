from imgproc_infra.app import main

main()
