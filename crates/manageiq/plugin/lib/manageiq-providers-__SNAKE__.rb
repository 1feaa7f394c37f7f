require "manageiq/providers/__SNAKE__"
