require "manageiq/providers/__SNAKE__/engine"
require "manageiq/providers/__SNAKE__/version"

module ManageIQ
  module Providers
    module __NAME__
    end
  end
end
